"""`mnistcnn serve`: a local web page to draw or photograph a digit and watch MyNet read it, with its input, feature
maps, the model's test-set views and the runs' live loss curves.

Usage: `mnistcnn serve runs/` or, from Python, `uvicorn.run(mnistcnn.serve.app.create_app(Path("runs"), "cpu"))`.
Nothing here is imported by `mnistcnn --help`: fastapi and torch load only when the command runs.
"""
