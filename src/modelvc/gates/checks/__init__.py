"""One module per gate kind; each returns GateResults and never raises for a failing check."""
