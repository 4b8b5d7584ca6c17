/* hubbub browser client: being built */
