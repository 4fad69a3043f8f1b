"""``python -m reconciler`` is the same as the ``reconcile`` console script."""

from .cli import main

if __name__ == "__main__":
    main()
