"""Hand-built Plans and tiny actions for the runtime's tests and benchmarks."""
