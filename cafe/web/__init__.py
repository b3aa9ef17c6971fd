"""Thin adapters: parse, authorize, call one service, answer."""
