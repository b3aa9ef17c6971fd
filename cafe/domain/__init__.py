"""Pure domain logic: no Flask, no SQLAlchemy, no Socket.IO imports."""
