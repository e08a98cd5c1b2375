"""The Streamlit page of MetaSeg Viewer: upload a brain MRI, see, judge and keep the segmentation."""
