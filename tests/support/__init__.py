"""What the tests and the benchmark share: a live server, gated test figures, a test app,
waiting on conditions, the browser's settings, and reading pages and processes."""
