"""The rules, once for both dialects: accounts, conversations, messages, reactions, the social
graph, and users as others see them. Services never read the request and never import a dialect."""
