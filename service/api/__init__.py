"""Thin HTTP and WebSocket handlers: parse, authorise, hand over to sessions."""
