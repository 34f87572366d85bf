"""envhost"""
