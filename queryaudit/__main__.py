"""`python -m queryaudit` and the `queryaudit` console script.

review-migration starts without typer (see queryaudit.migrations.command.main): a pre-commit
hook runs it once per file, and importing typer costs more than the review itself."""
import sys


def main() -> None:
    if sys.argv[1:2] == ["review-migration"]:
        from queryaudit.migrations.command import main as review_migration

        sys.exit(review_migration(sys.argv[2:]))
    from queryaudit.cli import run

    run()


if __name__ == "__main__":
    main()
