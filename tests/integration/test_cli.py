"""The facilitator command line: create an account, print an API token."""
from __future__ import annotations

from typing import Any


def test_facilitator_create_and_token(app: Any) -> None:
    runner = app.test_cli_runner()
    made = runner.invoke(args=["facilitator", "create", "cli@example.org", "--password", "a long password"])
    assert made.exit_code == 0, made.output
    assert "Created facilitator cli@example.org" in made.output
    again = runner.invoke(args=["facilitator", "create", "cli@example.org", "--password", "a long password"])
    assert again.exit_code != 0 and "already exists" in again.output
    weak = runner.invoke(args=["facilitator", "create", "weak@example.org", "--password", "short"])
    assert weak.exit_code != 0 and "at least 8" in weak.output
    token = runner.invoke(args=["facilitator", "token", "cli@example.org"])
    assert token.exit_code == 0
    secret = token.output.strip()
    assert secret.startswith("cafe_") and len(secret) > 30
    answer = app.test_client().post("/api/cafes", json={"title": "From a script"},
                                    headers={"Authorization": f"Bearer {secret}"})
    assert answer.status_code == 201
    missing = runner.invoke(args=["facilitator", "token", "nobody@example.org"])
    assert missing.exit_code != 0 and "No facilitator" in missing.output
