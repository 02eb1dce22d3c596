"""Data engine: objects, grasp synthesis, scenes, observations and HDF5 shards."""
