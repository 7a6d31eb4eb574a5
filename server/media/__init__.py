"""Media: turning stored image and DICOM bytes into pixels a browser can show."""
