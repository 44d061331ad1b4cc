from setuptools import find_packages, setup

setup(name='sera_mm', version='0.1.0', packages=find_packages(include=['sera_mm', 'sera_mm.*']))
