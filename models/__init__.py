"""The training side: fine-tune a teacher, distill a student, export int8 ONNX, evaluate.

Never shipped to Lambda: the serving side reads the artifact through cnai/ alone.
"""
