"""``flask --app wsgi facilitator create EMAIL --password PASSWORD`` and ``... facilitator token EMAIL``."""
from __future__ import annotations

import click
from flask import Flask
from flask.cli import AppGroup

from .services import accounts
from .services.errors import ServiceError

facilitator_cli = AppGroup("facilitator", help="Manage facilitator accounts.")


@facilitator_cli.command("create")
@click.argument("email")
@click.option("--password", prompt=True, hide_input=True, confirmation_prompt=True)
def create(email: str, password: str) -> None:
    """Create a facilitator account."""
    try:
        fac = accounts.create_facilitator(email, password)
    except ServiceError as exc:
        raise click.ClickException(exc.message) from None
    click.echo(f"Created facilitator {fac.email}")


@facilitator_cli.command("token")
@click.argument("email")
@click.option("--label", default="cli", help="A name to recognise the token by.")
def token(email: str, label: str) -> None:
    """Print a new API token for scripts (shown once)."""
    try:
        fac = accounts.find_facilitator(email)
    except ServiceError as exc:
        raise click.ClickException(exc.message) from None
    _token, secret = accounts.create_token(fac.id, label)
    click.echo(secret)


def register_cli(app: Flask) -> None:
    app.cli.add_command(facilitator_cli)
