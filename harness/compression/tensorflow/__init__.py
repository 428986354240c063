"""TensorFlow recipes and export. Import TensorFlow only through `tf_import.import_tf()`."""
