from setuptools import setup
setup(name='talker', version='0.1.0', packages=['talker'],
      entry_points={'console_scripts': ['talk = talker.main:main']})
