"""The widgets of the colabtui app, one job each."""
