// Hardhat node for the engine tests (`npx hardhat node`): the default test mnemonic,
// 20 funded accounts and room for several share chunks in one block.
module.exports = {
  networks: {
    hardhat: {
      chainId: 31337,
      blockGasLimit: 100000000,
      accounts: { count: 20 },
    },
  },
};
