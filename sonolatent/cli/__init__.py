"""Command-line interface: a thin layer that parses options and calls the library."""
