"""Everything between variants and the model: runtime, feature specs, the planner, the featuriser, the engine, tiling."""
