module example.com/robot

go 1.19

require example.com/greet v0.1.0
