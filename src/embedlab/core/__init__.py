"""Core building blocks every layer uses: error types, the boundary checks, row helpers,
numeric pieces (covariance, metrics, splits) and progress bars."""
