"""`python -m queryaudit` and the `queryaudit` console script.

review-migration starts without typer (see queryaudit.migrations.command.main): a pre-commit
hook runs it once per file, and importing typer costs more than the review itself. Its --help
is the typer command's, so that it reads like every other command's help."""

import sys


def main() -> None:
    args = sys.argv[1:]
    rest = [a for a in args if a != "--debug"]  # --debug may come before the command name too
    if rest[:1] == ["review-migration"] and not {"-h", "--help"} & set(rest):
        from queryaudit.migrations.command import main as review_migration

        sys.exit(review_migration(rest[1:] + ["--debug"] * (len(rest) < len(args))))
    from queryaudit.cli import run

    run()


if __name__ == "__main__":
    main()
