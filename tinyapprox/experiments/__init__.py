"""Applications of the library (commands, course tooling); nothing in the library imports this package."""
