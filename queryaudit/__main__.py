from queryaudit.cli import run

run()
