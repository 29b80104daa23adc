"""The demo and what only the demo and the tests need: throwaway local clusters and the
fixtures loader. Not runtime code of an audit."""
