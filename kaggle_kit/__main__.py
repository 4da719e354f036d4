"""`python -m kaggle_kit ...` is `kit ...` (what torchrun launches: `torchrun ... -m kaggle_kit train ell`).

Guarded: a process started with multiprocessing's spawn re-imports the main module (as `__mp_main__`) and must
not run the command line a second time."""

from kaggle_kit.cli import main

if __name__ == "__main__":
    main()
