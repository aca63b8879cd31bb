"""piflow-emoji training recipe: data prep, teacher, pi-ID student, ONNX export."""
