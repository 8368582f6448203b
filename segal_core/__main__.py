"""``python -m segal_core`` is ``segal``."""

from .cli import main

if __name__ == "__main__":
    main()
