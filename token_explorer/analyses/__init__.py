"""Pure functions: captured tensors + parameters -> plain results. No model, no UI."""
