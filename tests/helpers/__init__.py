"""Helpers shared by the test packages (imported as ``helpers.*``, never test module from test module)."""
