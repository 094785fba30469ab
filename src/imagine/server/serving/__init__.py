"""Serving code: wire requests into `Client.respond`, events back into the wire format."""
