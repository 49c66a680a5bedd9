print("qsm-bench")
