"""Looking at a space or a model: diagnostics, discovering new classes, the HTML report and
its plots."""
