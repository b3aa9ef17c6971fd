"""Use cases: load -> call the domain -> commit -> publish (after the commit, never before)."""
