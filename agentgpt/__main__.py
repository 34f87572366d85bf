from agentgpt.cli import main

main()
