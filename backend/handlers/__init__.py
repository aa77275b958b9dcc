"""One module per REST resource; routes.py collects them."""
