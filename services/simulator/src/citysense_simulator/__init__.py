"""citysense station simulator: thousands of synthetic stations per process, vectorised with numpy."""
