"""The current benchmark on the current engine, with the previous fisher_directions (97a81d4):
separates the engine's cost from the certified solver's."""
import importlib.util, sys
sys.path.insert(0, "/work/main/scripts")
import tlscopes.scopes
spec = importlib.util.spec_from_file_location("oldfisher", "/tmp/before/tlscopes/fisher.py")
old = importlib.util.module_from_spec(spec); sys.modules["oldfisher"] = old; spec.loader.exec_module(old)
tlscopes.scopes.fisher_directions = old.fisher_directions
import benchmark
sys.exit(benchmark.main(sys.argv[1:]))
