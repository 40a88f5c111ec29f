"""Screens of the colabtui app: welcome, help, stop confirmation, add-session form."""
