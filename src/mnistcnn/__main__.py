"""`python -m mnistcnn ...` runs the CLI."""

from mnistcnn.cli import app

app()
