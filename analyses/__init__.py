"""Analyses built on the tlscopes public API: attention sinks, the IG path, Fisher spectra."""
