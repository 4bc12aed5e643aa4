from notebench.executor.runtime.imports import without_optional_imports

with without_optional_imports():  # the executor must answer the hub within ~10 s of starting
    from notebench.executor.app import main

main()
