"""Models and what runs them: the TFLite runtime loader, the manifest, face detection."""
