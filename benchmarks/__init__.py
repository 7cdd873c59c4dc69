"""Speed and throughput benchmarks: run each as `python -m benchmarks.<name>` from the repository root.
(The pre-registered study is in `studies/`, the own-data example in `examples/`.)"""
