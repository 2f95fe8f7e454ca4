"""Everything that touches the MRML scene: node building, headless slicer-core, rendering."""
