"""Thin route handlers, one module per endpoint family; each exposes `router` (an APIRouter) and
`app.py` includes them all. A new endpoint: a protocol module, a serving module, a routes module, one
line in `app.ROUTERS`."""
