"""Reference data and models: scikit-learn's bundled digits, the built-in MLP, user model loaders."""
