"""Local stand-ins for the systems the proxy talks to, started by the tests themselves."""
