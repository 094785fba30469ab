"""imagine's model lab: readable from-scratch architectures in torch, importing nothing else of imagine.

Needs the `torch` extra: pip install 'imagine[torch]'.
"""
