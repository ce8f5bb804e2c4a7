"""Model families behind one Classifier interface, calibration, and the self-contained artifact format."""
