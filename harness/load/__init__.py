"""Load generation: Locust in a subprocess for HTTP targets, a thread pool for in-process ones."""
